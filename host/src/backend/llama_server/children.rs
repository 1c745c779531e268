//! Every llama-server Ozone has running, so that nothing survives Ozone: the CLI's
//! Ctrl-C handler calls [`kill_all_servers`]; each server also runs in its own process
//! group (killed as a whole), under a supervisor that kills that group when Ozone dies
//! (see `supervisor.rs`).

use std::collections::BTreeSet;
use std::sync::{Mutex, MutexGuard};

static LIVE: Mutex<BTreeSet<i32>> = Mutex::new(BTreeSet::new());

fn live() -> MutexGuard<'static, BTreeSet<i32>> {
    // A panic elsewhere while holding the lock leaves the set itself intact.
    LIVE.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

pub(super) fn register(pid: i32) {
    live().insert(pid);
}

pub(super) fn unregister(pid: i32) {
    live().remove(&pid);
}

/// Process ids (= process group ids) of the servers running now.
pub fn live_server_pids() -> Vec<u32> {
    live().iter().map(|p| *p as u32).collect()
}

/// SIGKILLs every live server's process group. Safe to call from a signal-handling
/// task; the servers' owners still reap them.
pub fn kill_all_servers() {
    for pid in live().iter() {
        signal_group(*pid, libc::SIGKILL);
    }
}

/// Sends `signal` to the process group led by `pid`.
pub(super) fn signal_group(pid: i32, signal: i32) {
    // SAFETY: killpg has no memory-safety preconditions; a stale group id only
    // yields ESRCH, which is ignored.
    unsafe {
        libc::killpg(pid, signal);
    }
}
