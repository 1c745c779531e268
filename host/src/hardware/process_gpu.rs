//! GPU memory used by given processes (the inference server's tree), for the GPU-memory
//! budget: the sampler hands the tree's pids to a [`ProcessGpuReader`] every tick.
//!
//! Where it comes from ([`ProcessGpuSource`]):
//! - **NVIDIA**: NVML's running compute and graphics processes of every device, their
//!   `used_gpu_memory` summed over the pids asked about (the figure `nvidia-smi` shows
//!   per process). NVML names host pids: inside a container without the host's PID
//!   namespace they match nothing here, and the reading is absent (said once).
//! - **AMD**: the amdgpu DRM client stats in `/proc/<pid>/fdinfo` (Linux ≥ 5.19), the
//!   closest reading AMD has (see [`super::amd_fdinfo`]).
//! - **Recorded**: a recorded NVML per-process reading replayed, the recorded server
//!   process standing for whichever server is watched: how CI, which has no GPU, runs a
//!   real trial against the budget.
//!
//! Elsewhere (no GPU, an NVIDIA GPU seen only through `nvidia-smi`, AMD through
//! `rocm-smi` or an older kernel) there is no per-process reading, and
//! [`availability`] says why, so the budget can be refused up front.

use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use nvml_wrapper::Nvml;

use super::nvidia_smi::{self, ComputeApp};
use super::{amd_fdinfo, amd_sysfs, nvml};

/// Where the sampler reads the server's own GPU memory.
#[derive(Debug, Clone, Default)]
pub enum ProcessGpuSource {
    /// NVML on NVIDIA, the amdgpu DRM client stats on AMD: whichever this machine has.
    #[default]
    Detect,
    /// Never read (the server's GPU memory stays absent).
    Off,
    /// A recorded reading, replayed.
    Recorded(Recording),
}

/// A recorded per-process reading (`nvidia-smi --query-compute-apps=…` CSV, NVML's
/// figures) whose server process stands for the watched server: asked about a tree whose
/// root is the live server, it answers with what the recorded server used, plus any other
/// recorded process whose pid is in the tree.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Recording {
    apps: Vec<ComputeApp>,
    server_pid: u32,
}

/// Why a recording cannot stand for a server.
#[derive(Debug, thiserror::Error)]
#[error("the recording lists no process with pid {0}")]
pub struct NoSuchProcess(pub u32);

impl Recording {
    /// `text`: `--query-compute-apps` CSV with its header; `server_pid`: the recorded
    /// process that stands for the watched server.
    pub fn from_compute_apps(text: &str, server_pid: u32) -> Result<Self, NoSuchProcess> {
        let apps = nvidia_smi::parse_compute_apps(text);
        if !apps.iter().any(|a| a.pid == server_pid) {
            return Err(NoSuchProcess(server_pid));
        }
        Ok(Self { apps, server_pid })
    }

    fn used_bytes(&self, pids: &[u32]) -> Option<u64> {
        let root = *pids.first()?;
        self.apps
            .iter()
            .filter(|a| {
                pids.contains(&if a.pid == self.server_pid {
                    root
                } else {
                    a.pid
                })
            })
            .try_fold(0u64, |sum, a| Some(sum + a.used_bytes?))
    }
}

/// How this machine tells a process's GPU memory, or why it cannot.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Availability {
    Nvml,
    AmdFdinfo,
    Recorded,
    Unavailable(String),
}

impl Availability {
    /// Where the reading comes from, for messages and `config show`.
    pub fn describe(&self) -> &str {
        match self {
            Availability::Nvml => "NVML per-process used memory",
            Availability::AmdFdinfo => "amdgpu DRM client stats (/proc/<pid>/fdinfo)",
            Availability::Recorded => "a recorded per-process reading",
            Availability::Unavailable(why) => why,
        }
    }
}

/// Whether `source` can read per-process GPU memory on this machine (`sysfs_root`, and
/// `dev_dri`/`proc_root` for the AMD kernel check).
pub fn availability(
    source: &ProcessGpuSource,
    sysfs_root: &Path,
    proc_root: &Path,
) -> Availability {
    match source {
        ProcessGpuSource::Off => Availability::Unavailable("per-process GPU reading is off".into()),
        ProcessGpuSource::Recorded(_) => Availability::Recorded,
        ProcessGpuSource::Detect => detect(sysfs_root, proc_root)
            .unwrap_or_else(|| Availability::Unavailable(why_unavailable())),
    }
}

fn nvml_with_devices() -> Option<&'static Nvml> {
    nvml::shared().filter(|n| n.device_count().is_ok_and(|c| c > 0))
}

/// NVML, else the AMD reading (or why an AMD GPU has none); `None`: no GPU source.
fn detect(sysfs_root: &Path, proc_root: &Path) -> Option<Availability> {
    if nvml_with_devices().is_some() {
        return Some(Availability::Nvml);
    }
    if !amd_sysfs::cards(sysfs_root).is_empty() {
        // The kernel does not change while Ozone runs: check once.
        static AMD: OnceLock<Result<(), String>> = OnceLock::new();
        let dev_dri = Path::new("/dev/dri");
        return Some(
            match AMD.get_or_init(|| amd_fdinfo::kernel_reports_memory(dev_dri, proc_root)) {
                Ok(()) => Availability::AmdFdinfo,
                Err(why) => Availability::Unavailable(format!(
                    "AMD GPU found, but no per-process GPU memory: {why}"
                )),
            },
        );
    }
    None
}

/// Why [`detect`] found nothing, in words (runs `nvidia-smi`: not for every trial).
fn why_unavailable() -> String {
    let smi_sees_nvidia = nvidia_smi::run().is_some_and(|g| !g.is_empty());
    if smi_sees_nvidia {
        "NVIDIA GPU seen through nvidia-smi only: per-process GPU memory needs NVML \
         (libnvidia-ml.so.1 from the driver)"
            .into()
    } else {
        "no GPU with a per-process memory reading (NVML, or amdgpu in sysfs) was found".into()
    }
}

/// Reads the GPU memory of a set of processes; made per sampler.
pub struct ProcessGpuReader {
    kind: ReaderKind,
    proc_root: PathBuf,
    warned: bool,
}

enum ReaderKind {
    Nvml(&'static Nvml),
    AmdFdinfo { unified: HashSet<String> },
    Recorded(Recording),
}

impl ProcessGpuReader {
    /// The reader `source` gives on this machine; `None` when nothing can be read.
    pub fn open(source: &ProcessGpuSource, sysfs_root: &Path, proc_root: &Path) -> Option<Self> {
        let kind = match source {
            ProcessGpuSource::Off => return None,
            ProcessGpuSource::Recorded(r) => ReaderKind::Recorded(r.clone()),
            ProcessGpuSource::Detect => match nvml_with_devices() {
                Some(nvml) => ReaderKind::Nvml(nvml),
                None if detect(sysfs_root, proc_root) == Some(Availability::AmdFdinfo) => {
                    ReaderKind::AmdFdinfo {
                        unified: unified_pdevs(sysfs_root),
                    }
                }
                None => return None,
            },
        };
        Some(Self {
            kind,
            proc_root: proc_root.to_path_buf(),
            warned: false,
        })
    }

    /// GPU memory used by `pids` together (the server first), over all GPUs. 0 when none
    /// of them holds any; `None` when it cannot be told.
    pub fn used_bytes(&mut self, pids: &[u32]) -> Option<u64> {
        match &self.kind {
            ReaderKind::Recorded(r) => r.used_bytes(pids),
            ReaderKind::AmdFdinfo { unified } => {
                Some(amd_fdinfo::used_bytes(&self.proc_root, pids, unified))
            }
            ReaderKind::Nvml(nvml) => {
                let listed = match nvml::process_memory(nvml) {
                    Ok(listed) => listed,
                    Err(e) => {
                        self.warn_once(&format!("NVML cannot list GPU processes: {e}"));
                        return None;
                    }
                };
                let ours: Vec<Option<u64>> = listed
                    .iter()
                    .filter(|(pid, _)| pids.contains(pid))
                    .map(|(_, used)| *used)
                    .collect();
                let foreign = listed
                    .iter()
                    .any(|(pid, _)| !self.proc_root.join(pid.to_string()).exists());
                if ours.is_empty() && foreign {
                    self.warn_once(
                        "NVML lists GPU processes this /proc does not know (a container \
                         without the host's PID namespace?): the server's own GPU memory \
                         cannot be told here",
                    );
                    return None;
                }
                ours.into_iter()
                    .try_fold(0u64, |sum, used| Some(sum + used?))
            }
        }
    }

    fn warn_once(&mut self, message: &str) {
        if !self.warned {
            self.warned = true;
            tracing::warn!("{message}");
        }
    }
}

/// PCI addresses of the AMD cards whose GTT counts as GPU memory (unified-memory APUs).
fn unified_pdevs(sysfs_root: &Path) -> HashSet<String> {
    amd_sysfs::cards(sysfs_root)
        .into_iter()
        .filter(|card| amd_sysfs::read_card(card).unified_memory)
        .filter_map(|card| {
            let device = std::fs::canonicalize(card.join("device")).ok()?;
            Some(device.file_name()?.to_str()?.to_owned())
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn recording() -> Recording {
        Recording::from_compute_apps(
            include_str!("../../tests/fixtures/hardware/nvidia-smi/compute-apps-l40s-triton.csv"),
            44378,
        )
        .expect("pid 44378 is recorded")
    }

    #[test]
    fn the_recorded_server_stands_for_the_watched_one() {
        let r = recording();
        // The live server 4242 is the recorded tritonserver (1836 MiB); the other
        // recorded processes are not in its tree.
        assert_eq!(r.used_bytes(&[4242, 4243]), Some(1836 << 20));
        // A recorded pid that is really in the tree counts too.
        assert_eq!(r.used_bytes(&[4242, 52114]), Some((1836 + 6294) << 20));
        assert_eq!(r.used_bytes(&[]), None);
        assert!(matches!(
            Recording::from_compute_apps("pid, used_gpu_memory [MiB]\n1, 5 MiB\n", 2),
            Err(NoSuchProcess(2))
        ));
    }

    #[test]
    fn a_recorded_source_opens_anywhere_and_off_never() {
        let source = ProcessGpuSource::Recorded(recording());
        let mut reader =
            ProcessGpuReader::open(&source, Path::new("/nonexistent"), Path::new("/proc"))
                .expect("a recorded source needs no GPU");
        assert_eq!(reader.used_bytes(&[1]), Some(1836 << 20));
        let off = ProcessGpuSource::Off;
        assert!(ProcessGpuReader::open(&off, Path::new("/sys"), Path::new("/proc")).is_none());
        assert!(matches!(
            availability(&off, Path::new("/sys"), Path::new("/proc")),
            Availability::Unavailable(_)
        ));
    }
}
