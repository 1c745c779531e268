//! AMD GPU memory per process: the amdgpu DRM client stats in `/proc/<pid>/fdinfo/<fd>`
//! (Linux ≥ 5.19; `Documentation/gpu/drm-usage-stats.rst`). Every open DRM file of a
//! process shows its client's memory:
//!
//! ```text
//! drm-driver:     amdgpu
//! drm-pdev:       0000:04:00.0
//! drm-client-id:  4
//! drm-memory-vram:        44564 KiB      (amdgpu's own key, Linux ≥ 5.19)
//! drm-memory-gtt:         2392 KiB
//! drm-resident-vram:      44564 KiB      (the common keys, since 2024; preferred)
//! ```
//!
//! This is the closest AMD has to NVML's per-process figure: the buffers the process's
//! DRM clients hold, not the driver's whole-card accounting. The same client may be
//! reachable through several fds (`dup`, inheritance), so clients are counted once by
//! (device, client id). On a unified-memory APU the model lives in GTT, so GTT counts as
//! GPU memory there, as it does for the whole-card figure ([`super::GpuInfo`]).

use std::collections::HashSet;
use std::path::Path;

/// One DRM client of an amdgpu device, as one fdinfo file shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DrmClient {
    /// PCI address of the device (`drm-pdev`).
    pub pdev: String,
    pub client_id: u64,
    pub vram_bytes: Option<u64>,
    pub gtt_bytes: Option<u64>,
}

/// The amdgpu client an fdinfo file describes; `None` for any other file (a socket, a
/// regular file, another DRM driver, a kernel without the stats).
pub fn parse(text: &str) -> Option<DrmClient> {
    let mut driver = None;
    let mut pdev = None;
    let mut client_id = None;
    let (mut vram, mut gtt, mut resident_vram, mut resident_gtt) = (None, None, None, None);
    for line in text.lines() {
        let Some((key, value)) = line.split_once(':') else {
            continue;
        };
        let value = value.trim();
        match key.trim() {
            "drm-driver" => driver = Some(value),
            "drm-pdev" => pdev = Some(value.to_owned()),
            "drm-client-id" => client_id = value.parse().ok(),
            "drm-memory-vram" => vram = size_bytes(value),
            "drm-memory-gtt" => gtt = size_bytes(value),
            "drm-resident-vram" => resident_vram = size_bytes(value),
            "drm-resident-gtt" => resident_gtt = size_bytes(value),
            _ => {}
        }
    }
    if driver != Some("amdgpu") {
        return None;
    }
    Some(DrmClient {
        pdev: pdev?,
        client_id: client_id?,
        vram_bytes: resident_vram.or(vram),
        gtt_bytes: resident_gtt.or(gtt),
    })
}

/// `17300 KiB`, `2 MiB`, `0` (bytes when no unit is printed).
fn size_bytes(value: &str) -> Option<u64> {
    let mut parts = value.split_ascii_whitespace();
    let number: u64 = parts.next()?.parse().ok()?;
    let scale: u64 = match parts.next() {
        None => 1,
        Some("KiB") => 1 << 10,
        Some("MiB") => 1 << 20,
        Some("GiB") => 1 << 30,
        Some(_) => return None,
    };
    number.checked_mul(scale)
}

/// GPU memory held by the amdgpu clients of `pids`: VRAM, plus GTT on the devices in
/// `unified` (APUs). A process without any amdgpu client holds 0; a process that has
/// gone stops counting.
pub fn used_bytes(proc_root: &Path, pids: &[u32], unified: &HashSet<String>) -> u64 {
    let mut seen: HashSet<(String, u64)> = HashSet::new();
    let mut total = 0u64;
    for pid in pids {
        let Ok(entries) = std::fs::read_dir(proc_root.join(pid.to_string()).join("fdinfo")) else {
            continue;
        };
        for entry in entries.flatten() {
            let Some(client) = std::fs::read_to_string(entry.path())
                .ok()
                .and_then(|t| parse(&t))
            else {
                continue;
            };
            if !seen.insert((client.pdev.clone(), client.client_id)) {
                continue;
            }
            total += client.vram_bytes.unwrap_or(0);
            if unified.contains(&client.pdev) {
                total += client.gtt_bytes.unwrap_or(0);
            }
        }
    }
    total
}

/// Whether this kernel reports amdgpu client memory: opens an amdgpu render node under
/// `dev_dri` and reads this process's own fdinfo for it. `Err` says why not.
pub fn kernel_reports_memory(dev_dri: &Path, proc_root: &Path) -> Result<(), String> {
    use std::os::fd::AsRawFd;
    let mut nodes: Vec<_> = std::fs::read_dir(dev_dri)
        .map_err(|e| format!("cannot list {}: {e}", dev_dri.display()))?
        .flatten()
        .map(|e| e.path())
        .filter(|p| {
            p.file_name()
                .and_then(|n| n.to_str())
                .is_some_and(|n| n.starts_with("renderD"))
        })
        .collect();
    nodes.sort();
    let mut last = format!("no render node under {}", dev_dri.display());
    for node in nodes {
        let file = match std::fs::File::open(&node) {
            Ok(f) => f,
            Err(e) => {
                last = format!("cannot open {}: {e}", node.display());
                continue;
            }
        };
        let fdinfo = proc_root
            .join(std::process::id().to_string())
            .join("fdinfo")
            .join(file.as_raw_fd().to_string());
        let text = std::fs::read_to_string(&fdinfo).unwrap_or_default();
        if !text.contains("drm-driver:") || !text.contains("amdgpu") {
            last = format!("{} is not an amdgpu device", node.display());
            continue;
        }
        return match parse(&text) {
            Some(c) if c.vram_bytes.is_some() => Ok(()),
            _ => Err(
                "this kernel's amdgpu fdinfo has no drm-memory-vram (Linux 5.19 or newer reports it)"
                    .into(),
            ),
        };
    }
    Err(last)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::PathBuf;

    fn fixture(name: &str) -> String {
        let path = Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("tests/fixtures/hardware/fdinfo")
            .join(name);
        std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
    }

    #[test]
    fn amdgpu_client_with_the_legacy_keys() {
        // Kernels before amdgpu moved to drm_print_memory_stats (2024): its own
        // drm-memory-* keys only.
        let c = parse(&fixture("amdgpu-legacy-keys.txt")).expect("an amdgpu client");
        assert_eq!(c.pdev, "0000:83:00.0");
        assert_eq!(c.client_id, 1_203_108);
        assert_eq!(c.vram_bytes, Some(76 << 10));
        assert_eq!(c.gtt_bytes, Some(44 << 10));
    }

    #[test]
    fn newer_kernels_resident_keys_are_read() {
        // Since amdgpu moved to drm_print_memory_stats (2024): the common drm-total/resident
        // keys beside the legacy ones.
        let text = fixture("amdgpu-drm-total-keys.txt");
        let c = parse(&text).expect("an amdgpu client");
        assert_eq!((c.pdev.as_str(), c.client_id), ("0000:04:00.0", 4));
        assert_eq!(c.vram_bytes, Some(44_564 << 10));
        assert_eq!(c.gtt_bytes, Some(2392 << 10));
        // Where they differ (buffers without a backing store count in drm-memory-*, not
        // in drm-resident-*), what is resident is what the GPU holds.
        let evicted = text.replace(
            "drm-resident-vram:\t44564 KiB",
            "drm-resident-vram:\t40000 KiB",
        );
        assert_ne!(evicted, text);
        assert_eq!(
            parse(&evicted).and_then(|c| c.vram_bytes),
            Some(40_000 << 10)
        );
    }

    #[test]
    fn other_files_are_not_clients() {
        assert_eq!(
            parse("pos:\t0\nflags:\t02\nmnt_id:\t24\nino:\t1133\n"),
            None
        );
        assert_eq!(
            parse("drm-driver:\ti915\ndrm-pdev:\t0000:00:02.0\ndrm-client-id:\t3\n"),
            None
        );
        assert_eq!(size_bytes("12 furlongs"), None);
        assert_eq!(size_bytes("0"), Some(0));
        // drm_print_memory_stats prints whole MiB as MiB (`drm-total-gtt:\t22 MiB`).
        assert_eq!(size_bytes("22 MiB"), Some(22 << 20));
    }

    /// A fake `/proc` with one server (pid 7) holding the fixture client twice (a dup'd
    /// fd) and a helper (pid 8) holding a second client on an APU.
    fn proc_tree() -> PathBuf {
        let root = std::env::temp_dir().join(format!("ozone-fdinfo-{}", std::process::id()));
        let write = |pid: u32, fd: u32, text: &str| {
            let dir = root.join(pid.to_string()).join("fdinfo");
            std::fs::create_dir_all(&dir).expect("temp dir");
            std::fs::write(dir.join(fd.to_string()), text).expect("fdinfo written");
        };
        let discrete = fixture("amdgpu-legacy-keys.txt");
        write(7, 0, "pos:\t0\nflags:\t0100002\n");
        write(7, 5, &discrete);
        write(7, 6, &discrete);
        let apu = discrete
            .replace("0000:83:00.0", "0000:c5:00.0")
            .replace("1203108", "1203109");
        write(8, 4, &apu);
        root
    }

    #[test]
    fn a_client_is_counted_once_and_gtt_only_on_unified_memory() {
        let root = proc_tree();
        let vram = 76u64 << 10;
        let gtt = 44u64 << 10;
        let none = HashSet::new();
        assert_eq!(used_bytes(&root, &[7], &none), vram);
        assert_eq!(used_bytes(&root, &[7, 8], &none), 2 * vram);
        let apu = HashSet::from(["0000:c5:00.0".to_string()]);
        assert_eq!(used_bytes(&root, &[7, 8], &apu), 2 * vram + gtt);
        // A pid that is gone, or holds no DRM client: nothing.
        assert_eq!(used_bytes(&root, &[999_999], &none), 0);
        let _ = std::fs::remove_dir_all(&root);
    }
}
