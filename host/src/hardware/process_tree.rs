//! Resident memory of a process tree, from `/proc` (Linux).
//!
//! The inference server may fork helpers (Ollama runners, llama.cpp RPC workers), so the
//! sampler counts the watched process and all its descendants. Children come from
//! `/proc/<pid>/task/<tid>/children` (cheap); on kernels without that file the whole of
//! `/proc` is scanned for parent ids instead.

use std::collections::HashMap;
use std::path::Path;

/// The root and all its living descendants, root first. Empty if the root is gone.
pub fn tree_pids(proc_root: &Path, root: u32) -> Vec<u32> {
    if !proc_root.join(root.to_string()).is_dir() {
        return Vec::new();
    }
    let mut pids = vec![root];
    let mut parents_by_scan: Option<HashMap<u32, Vec<u32>>> = None;
    let mut i = 0;
    while i < pids.len() {
        let pid = pids[i];
        let children = match children_of(proc_root, pid) {
            Some(children) => children,
            None => parents_by_scan
                .get_or_insert_with(|| scan_children(proc_root))
                .get(&pid)
                .cloned()
                .unwrap_or_default(),
        };
        for child in children {
            // A pid cannot repeat in a tree, but guard against a racing reuse anyway.
            if !pids.contains(&child) {
                pids.push(child);
            }
        }
        i += 1;
    }
    pids
}

/// Resident memory of `pids` (a tree, root first); `None` if the root is unreadable.
pub fn rss_sum(proc_root: &Path, pids: &[u32]) -> Option<u64> {
    let root_rss = rss_bytes(proc_root, *pids.first()?)?;
    // A child that exits between listing and reading simply stops counting.
    let children: u64 = pids[1..]
        .iter()
        .filter_map(|&pid| rss_bytes(proc_root, pid))
        .sum();
    Some(root_rss + children)
}

/// Resident memory of one process from `/proc/<pid>/statm` (second field, pages).
pub fn rss_bytes(proc_root: &Path, pid: u32) -> Option<u64> {
    let text = std::fs::read_to_string(proc_root.join(pid.to_string()).join("statm")).ok()?;
    parse_statm_rss_pages(&text).map(|pages| pages * page_size())
}

pub fn parse_statm_rss_pages(text: &str) -> Option<u64> {
    text.split_ascii_whitespace().nth(1)?.parse().ok()
}

/// Parent pid from the text of `/proc/<pid>/stat`. The command name (field 2) may hold
/// spaces and parentheses, so fields are counted after its last `)`.
pub fn parse_stat_ppid(text: &str) -> Option<u32> {
    let after_comm = &text[text.rfind(')')? + 1..];
    after_comm.split_ascii_whitespace().nth(1)?.parse().ok()
}

/// When the process started (`/proc/<pid>/stat` field 22, clock ticks since boot):
/// with the pid, it names one process, so a pid reused after the server exited is not
/// mistaken for it.
pub fn start_time(proc_root: &Path, pid: u32) -> Option<u64> {
    let text = std::fs::read_to_string(proc_root.join(pid.to_string()).join("stat")).ok()?;
    parse_stat_start_time(&text)
}

pub fn parse_stat_start_time(text: &str) -> Option<u64> {
    let after_comm = &text[text.rfind(')')? + 1..];
    // Field 3 (state) is the first after the command name; field 22 is 19 further on.
    after_comm.split_ascii_whitespace().nth(19)?.parse().ok()
}

/// Children from every thread's `children` file; `None` when the kernel lacks them.
fn children_of(proc_root: &Path, pid: u32) -> Option<Vec<u32>> {
    let tasks = std::fs::read_dir(proc_root.join(pid.to_string()).join("task")).ok()?;
    let mut children = Vec::new();
    let mut any_file = false;
    for task in tasks.flatten() {
        let Ok(text) = std::fs::read_to_string(task.path().join("children")) else {
            continue;
        };
        any_file = true;
        children.extend(
            text.split_ascii_whitespace()
                .filter_map(|c| c.parse::<u32>().ok()),
        );
    }
    any_file.then_some(children)
}

/// Parent → children map built from every `/proc/<pid>/stat`.
fn scan_children(proc_root: &Path) -> HashMap<u32, Vec<u32>> {
    let mut map: HashMap<u32, Vec<u32>> = HashMap::new();
    let Ok(entries) = std::fs::read_dir(proc_root) else {
        return map;
    };
    for entry in entries.flatten() {
        let Some(pid) = entry
            .file_name()
            .to_str()
            .and_then(|n| n.parse::<u32>().ok())
        else {
            continue;
        };
        let ppid = std::fs::read_to_string(entry.path().join("stat"))
            .ok()
            .and_then(|t| parse_stat_ppid(&t));
        if let Some(ppid) = ppid {
            map.entry(ppid).or_default().push(pid);
        }
    }
    map
}

fn page_size() -> u64 {
    #[cfg(unix)]
    {
        // SAFETY: sysconf has no preconditions; it returns -1 on error.
        let size = unsafe { libc::sysconf(libc::_SC_PAGESIZE) };
        if size > 0 {
            return size as u64;
        }
    }
    4096
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ppid_survives_odd_command_names() {
        let text = "4242 (llama (server) x) S 4000 4242 4000 0 -1 4194560 1 0 0 0";
        assert_eq!(parse_stat_ppid(text), Some(4000));
        assert_eq!(parse_stat_ppid("garbage"), None);
    }

    #[test]
    fn start_time_is_field_22() {
        let text = "1234 (llama-server) S 1 1234 1234 0 -1 4194560 52144 0 0 0 311 45 0 0 20 0 \
                    17 0 8841234 4112039936 301234 18446744073709551615 1 1 0 0 0 0 0 4096 17610";
        assert_eq!(parse_stat_start_time(text), Some(8841234));
        assert_eq!(parse_stat_start_time("1 (x) S 0"), None);
        let me = std::process::id();
        if Path::new("/proc/self").exists() {
            assert!(start_time(Path::new("/proc"), me).is_some());
        }
    }

    #[test]
    fn statm_second_field_is_resident_pages() {
        assert_eq!(
            parse_statm_rss_pages("5563 1201 987 7 0 345 0\n"),
            Some(1201)
        );
        assert_eq!(parse_statm_rss_pages(""), None);
    }

    #[test]
    fn own_process_tree_includes_a_child() {
        let proc_root = Path::new("/proc");
        if !proc_root.join("self").exists() {
            return; // not Linux: nothing to read
        }
        let mut child = std::process::Command::new("sleep")
            .arg("5")
            .spawn()
            .expect("sleep runs");
        let me = std::process::id();
        let pids = tree_pids(proc_root, me);
        let _ = child.kill();
        let _ = child.wait();
        assert_eq!(pids.first(), Some(&me));
        assert!(pids.contains(&child.id()), "{pids:?} lacks {}", child.id());
        assert!(rss_sum(proc_root, &tree_pids(proc_root, me)).is_some_and(|b| b > 1 << 20));
    }

    #[test]
    fn scan_finds_the_same_children() {
        let proc_root = Path::new("/proc");
        if !proc_root.join("self").exists() {
            return;
        }
        let mut child = std::process::Command::new("sleep")
            .arg("5")
            .spawn()
            .expect("sleep runs");
        let map = scan_children(proc_root);
        let _ = child.kill();
        let _ = child.wait();
        assert!(map
            .get(&std::process::id())
            .is_some_and(|c| c.contains(&child.id())));
    }

    #[test]
    fn missing_root_is_none() {
        assert_eq!(
            rss_sum(Path::new("/proc"), &tree_pids(Path::new("/proc"), u32::MAX)),
            None
        );
        assert!(tree_pids(Path::new("/proc"), u32::MAX).is_empty());
    }
}
