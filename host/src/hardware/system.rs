//! Live CPU, RAM and process-tree readings for the sampler: `/proc` on Linux (cheap and
//! honest per interval), sysinfo elsewhere.

use std::path::{Path, PathBuf};

use sysinfo::{
    CpuRefreshKind, MemoryRefreshKind, Pid, ProcessRefreshKind, ProcessesToUpdate, System,
};

use super::{cpu_stat::CpuMeter, meminfo, process_tree};

/// One reading of the machine-wide figures.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct SystemReading {
    pub ram_total_bytes: Option<u64>,
    pub ram_used_bytes: Option<u64>,
    pub ram_available_bytes: Option<u64>,
    pub cpu_percent: Option<f64>,
}

pub enum SystemReader {
    /// Linux: `/proc/meminfo`, `/proc/stat` deltas, `/proc/<pid>/statm`.
    Procfs { root: PathBuf, cpu: CpuMeter },
    /// Elsewhere. sysinfo's CPU usage covers the time since its previous refresh, which it
    /// does not redo more often than its minimum update interval.
    Sysinfo(Box<System>),
}

impl SystemReader {
    pub fn new(proc_root: &Path) -> Self {
        let cpu = CpuMeter::new(proc_root);
        if cpu.available() && meminfo::read(proc_root).is_some() {
            return SystemReader::Procfs {
                root: proc_root.to_path_buf(),
                cpu,
            };
        }
        let mut system = System::new();
        system.refresh_cpu_specifics(CpuRefreshKind::nothing().with_cpu_usage());
        SystemReader::Sysinfo(Box::new(system))
    }

    pub fn read(&mut self) -> SystemReading {
        match self {
            SystemReader::Procfs { root, cpu } => {
                let mem = meminfo::read(root);
                SystemReading {
                    ram_total_bytes: mem.map(|m| m.total_bytes),
                    ram_used_bytes: mem.map(|m| m.used_bytes()),
                    ram_available_bytes: mem.map(|m| m.available_bytes),
                    cpu_percent: cpu.sample(),
                }
            }
            SystemReader::Sysinfo(system) => {
                system.refresh_memory_specifics(MemoryRefreshKind::nothing().with_ram());
                system.refresh_cpu_specifics(CpuRefreshKind::nothing().with_cpu_usage());
                let total = system.total_memory();
                let available = system.available_memory();
                // sysinfo reports 0 for what it could not read: absent, not 0.
                let known = total > 0;
                SystemReading {
                    ram_total_bytes: known.then_some(total),
                    ram_used_bytes: known.then(|| total.saturating_sub(available)),
                    ram_available_bytes: known.then_some(available),
                    cpu_percent: Some(f64::from(system.global_cpu_usage())),
                }
            }
        }
    }

    /// The tree rooted at `pid` (root first) and its resident memory; no pids and no
    /// memory when the root is gone.
    pub fn tree(&mut self, pid: u32) -> ProcessTree {
        match self {
            SystemReader::Procfs { root, .. } => {
                let pids = process_tree::tree_pids(root, pid);
                let rss_bytes = process_tree::rss_sum(root, &pids);
                ProcessTree { pids, rss_bytes }
            }
            SystemReader::Sysinfo(system) => {
                system.refresh_processes_specifics(
                    ProcessesToUpdate::All,
                    true,
                    ProcessRefreshKind::nothing().with_memory(),
                );
                let root = Pid::from_u32(pid);
                if system.process(root).is_none() {
                    return ProcessTree::default();
                }
                let mut tree = vec![root];
                let mut i = 0;
                while i < tree.len() {
                    let parent = tree[i];
                    tree.extend(
                        system
                            .processes()
                            .iter()
                            .filter(|(_, p)| p.parent() == Some(parent))
                            .map(|(pid, _)| *pid),
                    );
                    i += 1;
                }
                let rss: u64 = tree
                    .iter()
                    .filter_map(|p| system.process(*p))
                    .map(|p| p.memory())
                    .sum();
                ProcessTree {
                    pids: tree.iter().map(|p| p.as_u32()).collect(),
                    rss_bytes: Some(rss),
                }
            }
        }
    }
}

/// A watched process tree at one tick.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ProcessTree {
    /// The root first, then its living descendants; empty when the root is gone.
    pub pids: Vec<u32>,
    pub rss_bytes: Option<u64>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn procfs_reader_reads_everything_on_linux() {
        let root = Path::new("/proc");
        if !root.join("stat").exists() {
            return; // not Linux
        }
        let mut reader = SystemReader::new(root);
        assert!(matches!(reader, SystemReader::Procfs { .. }));
        std::thread::sleep(std::time::Duration::from_millis(30));
        let r = reader.read();
        assert!(r.ram_total_bytes.is_some_and(|t| t > 0));
        assert!(r.ram_available_bytes.is_some());
        assert_eq!(
            r.ram_used_bytes,
            Some(r.ram_total_bytes.unwrap_or(0) - r.ram_available_bytes.unwrap_or(0))
        );
        assert!(reader.tree(std::process::id()).rss_bytes.is_some());
    }

    #[test]
    fn sysinfo_fallback_reads_ram_and_the_process_tree() {
        // No procfs at this root: the reader falls back to sysinfo (the non-Linux path).
        let mut reader = SystemReader::new(Path::new("/nonexistent-proc"));
        assert!(matches!(reader, SystemReader::Sysinfo(_)));
        let r = reader.read();
        assert!(r.ram_total_bytes.is_some_and(|t| t > 0));
        assert!(r.cpu_percent.is_some_and(|c| (0.0..=100.0).contains(&c)));
        let rss = reader.tree(std::process::id()).rss_bytes;
        assert!(rss.is_some_and(|b| b > 1 << 20), "{rss:?}");
        assert_eq!(reader.tree(u32::MAX), ProcessTree::default());
    }
}
