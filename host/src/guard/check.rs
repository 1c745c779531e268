//! The guard's decision: is this sample point a breach? A pure function of the
//! thresholds, the machine's capacity and the points seen so far, so it is tested on
//! plain sequences of points.
//!
//! Rules, checked in this order on every point (the first that fires is reported):
//!
//! 1. **process-memory**: the watched process tree's resident memory is *above*
//!    `process_memory_budget_mb` MiB (only when a budget is set).
//! 2. **gpu-memory-budget**: the GPU memory used by the watched process tree (NVML's
//!    per-process figure on NVIDIA, the amdgpu DRM client stats on AMD; see
//!    `hardware::process_gpu`) is *above* `gpu_memory_budget_mb` MiB (only when a
//!    budget is set).
//! 3. **vram**: GPU memory in use (all GPUs; VRAM + GTT on unified-memory APUs) is above
//!    the effective limit `min(total × max_vram_percent / 100, total − vram_reserve_mb)`.
//!    So a breach fires when the percentage is passed *or* free GPU memory falls below
//!    the reserve, whichever comes first. A reserve at or above the total makes the
//!    limit 0: the config asks for more headroom than exists.
//! 4. **ram**: RAM in use (total − MemAvailable) above
//!    `min(total × max_ram_percent / 100, total − ram_reserve_mb)`, i.e. the percentage is
//!    passed or available RAM falls below the reserve.
//! 5. **temperature**: the hottest GPU is above `max_temperature_c`.
//! 6. **cpu**: whole-machine CPU busy percent has been above `max_cpu_percent` on every
//!    point for at least `cpu_grace_ms` (measured from the first point above the limit to
//!    the current one). A point at or below the limit ends the spike; a point without a
//!    CPU reading neither starts nor ends one. With a grace of 0 the first point above the
//!    limit is a breach. Shorter spikes (prompt-processing bursts) are not breaches.
//!
//! A reading that is absent (could not be read) never breaches. Memory values and limits
//! in a [`Breach`] are bytes.

use super::Thresholds;
use crate::record::{Breach, Metric, SamplePoint};

const MIB: u64 = 1024 * 1024;

/// Totals the percentage limits are taken of, read once when sampling starts.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Capacity {
    /// Usable GPU memory over all GPUs (VRAM, plus GTT on unified-memory APUs).
    pub gpu_mem_total_bytes: Option<u64>,
    pub ram_total_bytes: Option<u64>,
}

/// Checks points one by one; keeps only the state the CPU grace period needs.
#[derive(Debug, Clone)]
pub struct Guard {
    thresholds: Thresholds,
    capacity: Capacity,
    /// Time of the first point of the current run of CPU readings above the limit.
    cpu_high_since_ms: Option<u64>,
}

impl Guard {
    pub fn new(thresholds: Thresholds, capacity: Capacity) -> Self {
        Self {
            thresholds,
            capacity,
            cpu_high_since_ms: None,
        }
    }

    /// Fills totals that were unknown so far (a GPU unreadable at the first tick);
    /// a known total is kept: totals do not change during a trial.
    pub fn learn_capacity(&mut self, seen: Capacity) {
        let c = &mut self.capacity;
        c.gpu_mem_total_bytes = c.gpu_mem_total_bytes.or(seen.gpu_mem_total_bytes);
        c.ram_total_bytes = c.ram_total_bytes.or(seen.ram_total_bytes);
    }

    pub fn thresholds(&self) -> &Thresholds {
        &self.thresholds
    }

    /// Effective GPU memory limit in bytes (see the module doc), if the total is known.
    pub fn vram_limit_bytes(&self) -> Option<u64> {
        self.capacity.gpu_mem_total_bytes.map(|total| {
            memory_limit_bytes(
                total,
                self.thresholds.max_vram_percent,
                self.thresholds.vram_reserve_mb,
            )
        })
    }

    /// Effective RAM limit in bytes (see the module doc), if the total is known.
    pub fn ram_limit_bytes(&self) -> Option<u64> {
        self.capacity.ram_total_bytes.map(|total| {
            memory_limit_bytes(
                total,
                self.thresholds.max_ram_percent,
                self.thresholds.ram_reserve_mb,
            )
        })
    }

    /// Checks one point; returns the breach it shows, if any.
    pub fn check(&mut self, p: &SamplePoint) -> Option<Breach> {
        let breach = |metric, value: f64, limit: f64| Breach {
            metric,
            value,
            limit,
            at_ms: p.t_ms,
            device: None,
        };
        // The CPU run is tracked before any early return so the grace clock stays right.
        let cpu_breach = self.track_cpu(p);

        if let (Some(budget_mb), Some(rss)) = (
            self.thresholds.process_memory_budget_mb,
            p.process_rss_bytes,
        ) {
            let limit = budget_mb.saturating_mul(MIB);
            if rss > limit {
                return Some(breach(Metric::ProcessMemory, rss as f64, limit as f64));
            }
        }
        if let (Some(budget_mb), Some(used)) =
            (self.thresholds.gpu_memory_budget_mb, p.server_gpu_mem_bytes)
        {
            let limit = budget_mb.saturating_mul(MIB);
            if used > limit {
                return Some(breach(Metric::GpuMemoryBudget, used as f64, limit as f64));
            }
        }
        if let (Some(limit), Some(used)) = (self.vram_limit_bytes(), p.gpu_mem_used_bytes) {
            if used > limit {
                return Some(breach(Metric::Vram, used as f64, limit as f64));
            }
        }
        if let (Some(limit), Some(used)) = (self.ram_limit_bytes(), p.ram_used_bytes) {
            if used > limit {
                return Some(breach(Metric::Ram, used as f64, limit as f64));
            }
        }
        if let Some(temp) = p.gpu_temp_c {
            if temp > self.thresholds.max_temperature_c {
                return Some(breach(
                    Metric::Temperature,
                    temp,
                    self.thresholds.max_temperature_c,
                ));
            }
        }
        cpu_breach.map(|cpu| breach(Metric::Cpu, cpu, self.thresholds.max_cpu_percent))
    }

    /// Updates the CPU spike state; returns the reading when the spike outlasted the grace.
    fn track_cpu(&mut self, p: &SamplePoint) -> Option<f64> {
        let cpu = p.cpu_percent?;
        if cpu <= self.thresholds.max_cpu_percent {
            self.cpu_high_since_ms = None;
            return None;
        }
        let since = *self.cpu_high_since_ms.get_or_insert(p.t_ms);
        (p.t_ms.saturating_sub(since) >= self.thresholds.cpu_grace_ms).then_some(cpu)
    }
}

/// The byte level a memory threshold breaches above: `min(total × max_percent / 100,
/// total − reserve_mb MiB)`, so whichever of the percentage and the reserve is stricter
/// wins. Saturating: a reserve at or above the total gives 0, a negative or NaN percent
/// gives 0, a percent above 100 is capped by the total. The one rule for the guard, the
/// plugins' `hardware-facts` and the report's limit line.
pub fn memory_limit_bytes(total_bytes: u64, max_percent: f64, reserve_mb: u64) -> u64 {
    // `as` saturates (NaN → 0); `max(0.0)` keeps a negative percent at 0.
    let by_percent = (total_bytes as f64 * max_percent / 100.0).max(0.0) as u64;
    let by_reserve = total_bytes.saturating_sub(reserve_mb.saturating_mul(MIB));
    by_percent.min(by_reserve)
}

/// The first breach in a sequence of points, as the sampler would raise it.
pub fn first_breach(
    thresholds: &Thresholds,
    capacity: Capacity,
    points: &[SamplePoint],
) -> Option<Breach> {
    let mut guard = Guard::new(thresholds.clone(), capacity);
    points.iter().find_map(|p| guard.check(p))
}

#[cfg(test)]
mod tests {
    use super::*;

    const GIB: u64 = 1024 * MIB;

    #[test]
    fn memory_limit_is_the_stricter_of_percent_and_reserve_and_saturates() {
        // 24 GiB at 90 % = 21.6 GiB; minus a 4 GiB reserve = 20 GiB: the reserve wins.
        assert_eq!(memory_limit_bytes(24 * GIB, 90.0, 4096), 20 * GIB);
        // 64 GiB at 85 % = 54.4 GiB; minus 4 GiB = 60 GiB: the percentage wins.
        let percent = (64.0 * GIB as f64 * 0.85) as u64;
        assert_eq!(memory_limit_bytes(64 * GIB, 85.0, 4096), percent);
        // A reserve at or beyond the total, even one that overflows in bytes: 0.
        assert_eq!(memory_limit_bytes(GIB, 90.0, 1024), 0);
        assert_eq!(memory_limit_bytes(GIB, 90.0, u64::MAX), 0);
        // Percentages outside 0..=100 never give more than the total or less than 0.
        assert_eq!(memory_limit_bytes(GIB, 250.0, 0), GIB);
        assert_eq!(memory_limit_bytes(GIB, -5.0, 0), 0);
        assert_eq!(memory_limit_bytes(GIB, f64::NAN, 0), 0);
        assert_eq!(memory_limit_bytes(u64::MAX, 100.0, 0), u64::MAX);
    }

    fn at(t_ms: u64) -> SamplePoint {
        SamplePoint {
            t_ms,
            ..SamplePoint::default()
        }
    }

    fn cpu(t_ms: u64, percent: f64) -> SamplePoint {
        SamplePoint {
            cpu_percent: Some(percent),
            ..at(t_ms)
        }
    }

    fn gpu_80g() -> Capacity {
        Capacity {
            gpu_mem_total_bytes: Some(80 * GIB),
            ram_total_bytes: Some(64 * GIB),
        }
    }

    #[test]
    fn vram_percent_rule_applies_on_a_large_card() {
        // 90 % of 80 GiB = 72 GiB; 80 − 4 GiB reserve = 76 GiB; the percentage is tighter.
        let guard = Guard::new(Thresholds::default(), gpu_80g());
        assert_eq!(guard.vram_limit_bytes(), Some((80 * GIB) * 9 / 10));
        let points = [70, 72, 73].map(|g| SamplePoint {
            gpu_mem_used_bytes: Some(g * GIB),
            ..at(g * 100)
        });
        let b = first_breach(&Thresholds::default(), gpu_80g(), &points).expect("breach");
        assert_eq!(b.metric, Metric::Vram);
        assert_eq!(b.at_ms, 7300);
        assert_eq!(b.value, (73 * GIB) as f64);
    }

    #[test]
    fn vram_reserve_rule_applies_on_a_small_card() {
        // 24 GiB card: 90 % = 21.6 GiB, but 4 GiB must stay free → limit 20 GiB.
        let cap = Capacity {
            gpu_mem_total_bytes: Some(24 * GIB),
            ram_total_bytes: None,
        };
        let guard = Guard::new(Thresholds::default(), cap);
        assert_eq!(guard.vram_limit_bytes(), Some(20 * GIB));
        let ok = SamplePoint {
            gpu_mem_used_bytes: Some(20 * GIB),
            ..at(0)
        };
        let over = SamplePoint {
            gpu_mem_used_bytes: Some(20 * GIB + 1),
            ..at(100)
        };
        assert_eq!(
            first_breach(&Thresholds::default(), cap, std::slice::from_ref(&ok)),
            None
        );
        let b = first_breach(&Thresholds::default(), cap, &[ok, over]).expect("breach");
        assert_eq!((b.metric, b.limit), (Metric::Vram, (20 * GIB) as f64));
    }

    #[test]
    fn reserve_larger_than_total_makes_any_use_a_breach() {
        let cap = Capacity {
            gpu_mem_total_bytes: Some(2 * GIB),
            ram_total_bytes: None,
        };
        assert_eq!(
            Guard::new(Thresholds::default(), cap).vram_limit_bytes(),
            Some(0)
        );
    }

    #[test]
    fn ram_breaches_when_available_falls_below_reserve() {
        // 16 GiB: 85 % = 13.6 GiB, 16 − 4 = 12 GiB → limit 12 GiB.
        let cap = Capacity {
            gpu_mem_total_bytes: None,
            ram_total_bytes: Some(16 * GIB),
        };
        let p = |used: u64, t| SamplePoint {
            ram_used_bytes: Some(used),
            ram_available_bytes: Some(16 * GIB - used),
            ..at(t)
        };
        let b = first_breach(
            &Thresholds::default(),
            cap,
            &[p(11 * GIB, 0), p(12 * GIB, 100), p(13 * GIB, 200)],
        )
        .expect("breach");
        assert_eq!((b.metric, b.at_ms), (Metric::Ram, 200));
        assert_eq!(b.limit, (12 * GIB) as f64);
    }

    #[test]
    fn process_budget_is_absolute_and_checked_first() {
        let t = Thresholds {
            process_memory_budget_mb: Some(100),
            ..Thresholds::default()
        };
        let p = SamplePoint {
            process_rss_bytes: Some(101 * MIB),
            gpu_mem_used_bytes: Some(79 * GIB), // also over, but reported second
            ..at(500)
        };
        let b = first_breach(&t, gpu_80g(), &[p]).expect("breach");
        assert_eq!(b.metric, Metric::ProcessMemory);
        assert_eq!(b.limit, (100 * MIB) as f64);
        // Without a budget the same RSS is fine.
        let p = SamplePoint {
            process_rss_bytes: Some(101 * MIB),
            ..at(0)
        };
        assert_eq!(first_breach(&Thresholds::default(), gpu_80g(), &[p]), None);
    }

    #[test]
    fn gpu_budget_counts_the_server_s_own_gpu_memory_only() {
        let t = Thresholds {
            gpu_memory_budget_mb: Some(40 * 1024),
            ..Thresholds::default()
        };
        // 60 GiB in use on the card, but the server itself holds 39 GiB: within budget.
        let shared = SamplePoint {
            gpu_mem_used_bytes: Some(60 * GIB),
            server_gpu_mem_bytes: Some(39 * GIB),
            ..at(100)
        };
        assert_eq!(
            first_breach(&t, gpu_80g(), std::slice::from_ref(&shared)),
            None
        );
        let over = SamplePoint {
            server_gpu_mem_bytes: Some(40 * GIB + 1),
            ..shared.clone()
        };
        let b = first_breach(&t, gpu_80g(), &[shared, over]).expect("breach");
        assert_eq!(
            (b.metric, b.limit, b.value),
            (
                Metric::GpuMemoryBudget,
                (40 * GIB) as f64,
                (40 * GIB + 1) as f64
            )
        );
        assert!(
            b.to_string()
                .starts_with("gpu-memory-budget reached 40960.0 MiB"),
            "{b}"
        );
        // Checked after the process budget, before the card-wide VRAM limit.
        let both = SamplePoint {
            server_gpu_mem_bytes: Some(41 * GIB),
            gpu_mem_used_bytes: Some(79 * GIB),
            ..at(0)
        };
        let b = first_breach(&t, gpu_80g(), &[both]).expect("breach");
        assert_eq!(b.metric, Metric::GpuMemoryBudget);
    }

    #[test]
    fn temperature_above_limit_breaches() {
        let p = |c, t| SamplePoint {
            gpu_temp_c: Some(c),
            ..at(t)
        };
        let points = [p(84.0, 0), p(85.0, 100), p(85.5, 200)];
        let b = first_breach(&Thresholds::default(), Capacity::default(), &points).unwrap();
        assert_eq!(
            (b.metric, b.value, b.at_ms),
            (Metric::Temperature, 85.5, 200)
        );
    }

    #[test]
    fn cpu_spike_shorter_than_grace_is_tolerated() {
        let t = Thresholds {
            cpu_grace_ms: 1000,
            ..Thresholds::default()
        };
        // 900 ms above the limit, then a dip, then 900 ms again: never a breach.
        let mut points: Vec<_> = (0..10).map(|i| cpu(i * 100, 99.0)).collect();
        points.push(cpu(1000, 50.0));
        points.extend((11..21).map(|i| cpu(i * 100, 99.0)));
        assert_eq!(first_breach(&t, Capacity::default(), &points), None);
    }

    #[test]
    fn cpu_spike_lasting_the_grace_breaches() {
        let t = Thresholds {
            cpu_grace_ms: 1000,
            ..Thresholds::default()
        };
        let mut points: Vec<_> = (0..5).map(|i| cpu(i * 100, 95.0)).collect();
        points.push(at(500)); // unreadable CPU: neither ends nor starts the spike
        points.extend((6..15).map(|i| cpu(i * 100, 95.0)));
        let b = first_breach(&t, Capacity::default(), &points).expect("breach");
        assert_eq!((b.metric, b.at_ms, b.limit), (Metric::Cpu, 1000, 90.0));
    }

    #[test]
    fn zero_grace_breaches_on_first_high_point() {
        let t = Thresholds {
            cpu_grace_ms: 0,
            ..Thresholds::default()
        };
        let points = [cpu(0, 90.0), cpu(100, 90.1)];
        let b = first_breach(&t, Capacity::default(), &points).expect("breach");
        assert_eq!(b.at_ms, 100);
    }

    #[test]
    fn a_total_learnt_late_enables_its_check() {
        let mut guard = Guard::new(Thresholds::default(), Capacity::default());
        let p = SamplePoint {
            gpu_mem_used_bytes: Some(79 * GIB),
            ..at(0)
        };
        assert_eq!(guard.check(&p), None);
        guard.learn_capacity(gpu_80g());
        assert_eq!(guard.check(&p).map(|b| b.metric), Some(Metric::Vram));
        // A later, different total does not move the limit.
        guard.learn_capacity(Capacity {
            gpu_mem_total_bytes: Some(1000 * GIB),
            ram_total_bytes: None,
        });
        assert_eq!(guard.vram_limit_bytes(), Some((80 * GIB) * 9 / 10));
    }

    #[test]
    fn absent_readings_never_breach() {
        let t = Thresholds {
            process_memory_budget_mb: Some(1),
            gpu_memory_budget_mb: Some(1),
            cpu_grace_ms: 0,
            ..Thresholds::default()
        };
        let points: Vec<_> = (0..20).map(|i| at(i * 100)).collect();
        assert_eq!(first_breach(&t, gpu_80g(), &points), None);
        // Readings without a known total cannot breach a percentage either.
        let p = SamplePoint {
            gpu_mem_used_bytes: Some(u64::MAX),
            ram_used_bytes: Some(u64::MAX),
            ..at(0)
        };
        assert_eq!(first_breach(&t, Capacity::default(), &[p]), None);
    }
}
