//! `/proc/meminfo`: RAM total and available (Linux).

use std::path::Path;

/// RAM figures in bytes. `used` is `total − available`: what the guard compares.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MemInfo {
    pub total_bytes: u64,
    pub available_bytes: u64,
}

impl MemInfo {
    pub fn used_bytes(&self) -> u64 {
        self.total_bytes.saturating_sub(self.available_bytes)
    }
}

/// Reads `<proc_root>/meminfo`; `None` when unreadable or lacking either field.
pub fn read(proc_root: &Path) -> Option<MemInfo> {
    parse(&std::fs::read_to_string(proc_root.join("meminfo")).ok()?)
}

/// Parses the text of `/proc/meminfo` (`MemTotal:  16314764 kB`).
pub fn parse(text: &str) -> Option<MemInfo> {
    let field = |name: &str| {
        text.lines().find_map(|line| {
            let rest = line.strip_prefix(name)?.strip_prefix(':')?;
            let kib: u64 = rest.trim().strip_suffix("kB")?.trim().parse().ok()?;
            Some(kib * 1024)
        })
    };
    Some(MemInfo {
        total_bytes: field("MemTotal")?,
        available_bytes: field("MemAvailable")?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_real_meminfo() {
        let text = include_str!("../../tests/fixtures/hardware/proc/meminfo");
        let m = parse(text).expect("parsed");
        assert_eq!(m.total_bytes, 24_601_372 * 1024);
        assert_eq!(m.available_bytes, 23_189_912 * 1024);
        assert_eq!(m.used_bytes(), (24_601_372 - 23_189_912) * 1024);
    }

    #[test]
    fn missing_available_is_none_not_zero() {
        assert_eq!(parse("MemTotal:  1000 kB\nMemFree:  10 kB\n"), None);
    }
}
