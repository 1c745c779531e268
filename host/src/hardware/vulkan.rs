//! The Vulkan drivers installed (ICD manifests): a Vulkan build of llama-server — the
//! PyPI wheel Ozone installs is one — has the Vulkan loader open every one of them at
//! start, even when no GPU device is used. Debian's `mesa-vulkan-drivers` (on every
//! desktop with Intel or AMD graphics) brings lavapipe, Intel and Radeon drivers: the
//! server's resident memory at rest grows by about 50 MiB (measured: 45 → 98 MiB on the
//! generated wide model at 2048 tokens). That memory counts against a
//! `--memory-budget-mb` like any other; `--memory-headroom-mb` is measured over it.
//!
//! The loader reads `VK_DRIVER_FILES` (or the older `VK_ICD_FILENAMES`) when set, else
//! the `icd.d` folders under the XDG data and config dirs; lavapipe is the software
//! device (`llvmpipe`), which llama.cpp uses only when named in
//! `GGML_VK_VISIBLE_DEVICES`.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

/// One Vulkan driver the loader would open.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct VulkanDriver {
    /// The manifest's file (`lvp_icd.x86_64.json`).
    pub manifest: PathBuf,
    /// The library it names (`ICD.library_path`), when readable.
    pub library: Option<String>,
    /// The software rasterizer (Mesa's lavapipe): a device only when asked for.
    pub software: bool,
}

/// Where the loader looks, in its order, when no override is set.
const SEARCH_DIRS: [&str; 4] = [
    "/etc/vulkan/icd.d",
    "/usr/local/share/vulkan/icd.d",
    "/usr/share/vulkan/icd.d",
    "/etc/xdg/vulkan/icd.d",
];

/// The drivers the Vulkan loader would open in this process's environment.
pub fn installed_drivers() -> Vec<VulkanDriver> {
    let listed = ["VK_DRIVER_FILES", "VK_ICD_FILENAMES"]
        .iter()
        .find_map(|v| std::env::var_os(v).filter(|v| !v.is_empty()));
    if let Some(list) = listed {
        return std::env::split_paths(&list)
            .filter(|p| p.is_file())
            .map(|p| driver(&p))
            .collect();
    }
    drivers_in(SEARCH_DIRS.iter().map(Path::new))
}

/// The manifests (`*.json`) in `dirs`, sorted by name within each.
pub fn drivers_in<'a>(dirs: impl IntoIterator<Item = &'a Path>) -> Vec<VulkanDriver> {
    let mut drivers = Vec::new();
    for dir in dirs {
        let Ok(entries) = std::fs::read_dir(dir) else {
            continue;
        };
        let mut manifests: Vec<PathBuf> = entries
            .filter_map(Result::ok)
            .map(|e| e.path())
            .filter(|p| p.extension().is_some_and(|e| e == "json"))
            .collect();
        manifests.sort();
        drivers.extend(manifests.iter().map(|p| driver(p)));
    }
    drivers
}

fn driver(manifest: &Path) -> VulkanDriver {
    let library = std::fs::read_to_string(manifest)
        .ok()
        .and_then(|text| serde_json::from_str::<serde_json::Value>(&text).ok())
        .and_then(|json| json["ICD"]["library_path"].as_str().map(str::to_owned));
    let named = |needle: &str| {
        manifest
            .file_name()
            .is_some_and(|n| n.to_string_lossy().starts_with(needle))
            || library.as_deref().is_some_and(|l| l.contains(needle))
    };
    VulkanDriver {
        manifest: manifest.to_owned(),
        software: named("lvp") || named("lavapipe"),
        library,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const FIXTURES: &str = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/fixtures/hardware/vulkan/icd.d"
    );

    #[test]
    fn mesa_s_manifests_are_read_and_lavapipe_is_the_software_one() {
        let drivers = drivers_in([Path::new(FIXTURES)]);
        let names: Vec<String> = drivers
            .iter()
            .map(|d| {
                d.manifest
                    .file_name()
                    .unwrap()
                    .to_string_lossy()
                    .into_owned()
            })
            .collect();
        assert_eq!(
            names,
            [
                "intel_icd.x86_64.json",
                "lvp_icd.x86_64.json",
                "radeon_icd.x86_64.json"
            ]
        );
        let lvp = &drivers[1];
        assert!(lvp.software);
        assert_eq!(
            lvp.library.as_deref(),
            Some("/usr/lib/x86_64-linux-gnu/libvulkan_lvp.so")
        );
        assert!(!drivers[0].software && !drivers[2].software);
        assert!(drivers_in([Path::new("/nonexistent")]).is_empty());
    }
}
