//! Whole-machine CPU busy percent from `/proc/stat` deltas (Linux).
//!
//! sysinfo refuses to re-read CPU counters more often than every 200 ms on Linux, so a
//! 100 ms sampler reads the counters itself: each reading covers exactly the interval
//! since the previous one.

use std::path::{Path, PathBuf};

/// Cumulative jiffies from the aggregate `cpu` line.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CpuTimes {
    /// Everything except idle and iowait.
    pub busy: u64,
    pub total: u64,
}

/// Parses the first (`cpu `) line of `/proc/stat`.
pub fn parse(text: &str) -> Option<CpuTimes> {
    let line = text.lines().find(|l| l.starts_with("cpu "))?;
    let fields: Vec<u64> = line
        .split_ascii_whitespace()
        .skip(1)
        .map(str::parse)
        .collect::<Result<_, _>>()
        .ok()?;
    // user nice system idle iowait irq softirq steal [guest guest_nice]; guest time is
    // already counted in user/nice, so only the first eight are summed.
    if fields.len() < 4 {
        return None;
    }
    let total: u64 = fields.iter().take(8).sum();
    let idle = fields[3] + fields.get(4).copied().unwrap_or(0);
    Some(CpuTimes {
        busy: total.saturating_sub(idle),
        total,
    })
}

/// Busy percent between two readings; `None` when no time passed.
pub fn percent_between(prev: CpuTimes, now: CpuTimes) -> Option<f64> {
    let total = now.total.checked_sub(prev.total)?;
    let busy = now.busy.saturating_sub(prev.busy);
    (total > 0).then(|| (busy as f64 / total as f64 * 100.0).clamp(0.0, 100.0))
}

/// Remembers the previous reading so each call reports the interval since the last.
#[derive(Debug)]
pub struct CpuMeter {
    path: PathBuf,
    prev: Option<CpuTimes>,
}

impl CpuMeter {
    /// Takes a baseline right away so the first [`CpuMeter::sample`] has a value.
    pub fn new(proc_root: &Path) -> Self {
        let path = proc_root.join("stat");
        let prev = read(&path);
        Self { path, prev }
    }

    /// Whether `/proc/stat` could be read (false: not Linux).
    pub fn available(&self) -> bool {
        self.prev.is_some()
    }

    /// Busy percent since the previous reading; `None` when `/proc/stat` is unreadable
    /// or no jiffy has passed since.
    pub fn sample(&mut self) -> Option<f64> {
        let now = read(&self.path)?;
        let percent = self.prev.and_then(|prev| percent_between(prev, now));
        // Keep the older baseline if no jiffy passed, so the next reading spans both.
        if percent.is_some() || self.prev.is_none() {
            self.prev = Some(now);
        }
        percent
    }
}

fn read(path: &Path) -> Option<CpuTimes> {
    parse(&std::fs::read_to_string(path).ok()?)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_real_proc_stat() {
        let t = parse(include_str!("../../tests/fixtures/hardware/proc/stat")).expect("parsed");
        // cpu  1045127 2360 312873 15520337 21391 0 9650 0 0 0
        assert_eq!(t.total, 1045127 + 2360 + 312873 + 15520337 + 21391 + 9650);
        assert_eq!(t.busy, 1045127 + 2360 + 312873 + 9650);
    }

    #[test]
    fn percent_is_busy_share_of_the_interval() {
        let a = CpuTimes {
            busy: 100,
            total: 1000,
        };
        let b = CpuTimes {
            busy: 175,
            total: 1100,
        };
        assert_eq!(percent_between(a, b), Some(75.0));
        assert_eq!(percent_between(a, a), None);
    }

    #[test]
    fn garbage_is_none() {
        assert_eq!(parse("intr 1 2 3\n"), None);
        assert_eq!(parse("cpu  1 x 3 4\n"), None);
    }
}
