//! Whether a GPU-memory budget can be held on this machine, decided before a run starts:
//! a budget at or above the GPU's total could never bite. Where nothing reads a
//! process's GPU memory live (no NVML, no amdgpu fdinfo: lavapipe, Metal), the budget is
//! held against llama-server's own account of the device buffers it allocated at load
//! (`backend::OpenOptions::gpu_budget_bytes`); [`live_reading_note`] says so.

use crate::hardware::process_gpu::Availability;

const MIB: u64 = 1024 * 1024;

const WHAT: &str = "--gpu-memory-budget-mb (ozone.gpu_memory_budget_mb)";

/// Why `--gpu-memory-budget-mb` / `ozone.gpu_memory_budget_mb` cannot be held here;
/// `None` when it can. `gpu_total_bytes`: every GPU together, when one was seen.
pub fn gpu_budget_problem(budget_mb: u64, gpu_total_bytes: Option<u64>) -> Option<String> {
    let total = gpu_total_bytes?;
    (budget_mb.saturating_mul(MIB) >= total).then(|| {
        format!(
            "{WHAT} {budget_mb} MiB is not below this machine's GPU memory ({} MiB): it could \
             never bite. Lower it, or leave it unset",
            total / MIB
        )
    })
}

/// What holds the budget where no live per-process reading exists (`None` where one
/// does): llama-server's account of its device buffers at load, checked before any
/// request.
pub fn live_reading_note(reading: &Availability) -> Option<String> {
    let Availability::Unavailable(why) = reading else {
        return None;
    };
    Some(format!(
        "{WHAT}: the GPU memory of the server's own processes cannot be read live here \
         ({why}); the budget is held against llama-server's own account of the device \
         buffers it allocated at load (a CPU-only server allocates none, and it never binds)"
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_budget_must_be_below_the_total() {
        let h100 = Some(81_559 * MIB);
        assert_eq!(gpu_budget_problem(40_960, h100), None);
        let over = gpu_budget_problem(81_559, h100).expect("refused");
        assert!(over.contains("81559 MiB is not below"), "{over}");
        assert!(over.contains("--gpu-memory-budget-mb"), "{over}");
        // No GPU total seen (lavapipe, a recorded reading on a CPU machine): nothing to
        // compare.
        assert_eq!(gpu_budget_problem(1, None), None);
        assert_eq!(live_reading_note(&Availability::Nvml), None);
        let none = Availability::Unavailable("no GPU here".into());
        let note = live_reading_note(&none).expect("a note");
        assert!(
            note.contains("no GPU here") && note.contains("at load"),
            "{note}"
        );
    }
}
