//! Stopping the watched process tree when a limit is crossed, so a trial's in-flight
//! requests fail at once instead of waiting for their timeout.

use std::path::Path;

use crate::hardware::process_tree;

/// Sends SIGKILL to the process tree rooted at `root` (root and every descendant,
/// listed before the first signal so orphans cannot escape by being re-parented).
/// SIGKILL rather than SIGTERM: a server past its memory limit must release it now, not
/// after a graceful shutdown. Returns how many processes were signalled.
pub fn kill_tree(proc_root: &Path, root: u32) -> usize {
    let mut pids = process_tree::tree_pids(proc_root, root);
    if pids.is_empty() {
        // No /proc (not Linux) or already gone: still try the root itself.
        pids.push(root);
    }
    pids.into_iter().filter(|&pid| kill(pid)).count()
}

#[cfg(unix)]
fn kill(pid: u32) -> bool {
    let Ok(pid) = libc::pid_t::try_from(pid) else {
        return false;
    };
    if pid <= 0 {
        return false; // 0 and negatives address process groups: never here
    }
    // SAFETY: kill(2) with a positive pid and a valid signal has no memory effects.
    unsafe { libc::kill(pid, libc::SIGKILL) == 0 }
}

#[cfg(not(unix))]
fn kill(pid: u32) -> bool {
    use sysinfo::{Pid, ProcessRefreshKind, ProcessesToUpdate, System};
    let pid = Pid::from_u32(pid);
    let mut system = System::new();
    system.refresh_processes_specifics(
        ProcessesToUpdate::Some(&[pid]),
        true,
        ProcessRefreshKind::nothing(),
    );
    system.process(pid).is_some_and(|p| p.kill())
}
