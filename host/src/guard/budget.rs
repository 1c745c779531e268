//! Whether a GPU-memory budget can be held on this machine, decided before a run starts:
//! the guard needs a per-process GPU reading, and a budget at or above the GPU's total
//! could never bite.

use crate::hardware::process_gpu::Availability;

const MIB: u64 = 1024 * 1024;

/// Why `--gpu-memory-budget-mb` / `ozone.gpu_memory_budget_mb` cannot be held here;
/// `None` when it can. `gpu_total_bytes`: every GPU together, when one was seen.
pub fn gpu_budget_problem(
    budget_mb: u64,
    gpu_total_bytes: Option<u64>,
    reading: &Availability,
) -> Option<String> {
    const WHAT: &str = "--gpu-memory-budget-mb (ozone.gpu_memory_budget_mb)";
    if let Availability::Unavailable(why) = reading {
        return Some(format!(
            "{WHAT} needs the GPU memory of the server's own processes, which cannot be read \
             here: {why}. Use --memory-budget-mb for the server's RAM, or the VRAM thresholds \
             (max_vram_percent, vram_reserve_mb) for the whole card"
        ));
    }
    let total = gpu_total_bytes?;
    (budget_mb.saturating_mul(MIB) >= total).then(|| {
        format!(
            "{WHAT} {budget_mb} MiB is not below this machine's GPU memory ({} MiB): it could \
             never bite. Lower it, or leave it unset",
            total / MIB
        )
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_budget_must_be_readable_and_below_the_total() {
        let h100 = Some(81_559 * MIB);
        assert_eq!(gpu_budget_problem(40_960, h100, &Availability::Nvml), None);
        let over = gpu_budget_problem(81_559, h100, &Availability::Nvml).expect("refused");
        assert!(over.contains("81559 MiB is not below"), "{over}");
        assert!(over.contains("--gpu-memory-budget-mb"), "{over}");
        // No GPU total seen (a recorded reading on a CPU machine): nothing to compare.
        assert_eq!(gpu_budget_problem(1, None, &Availability::Recorded), None);
        let none = Availability::Unavailable("no GPU here".into());
        let why = gpu_budget_problem(1, None, &none).expect("refused");
        assert!(
            why.contains("no GPU here") && why.contains("--memory-budget-mb"),
            "{why}"
        );
    }
}
