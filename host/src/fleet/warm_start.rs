//! Shared warm start: `ozone tune --warm-start-from DIR` starts from what the other nodes
//! of a fleet found, so the tenth identical node confirms the limit in two trials
//! instead of searching for it.
//!
//! A result counts when it was completed with the same hardware fingerprint, model
//! digest and Ozone version (the key of this machine's own store, `tune::memory`) and
//! under the same memory limits (percentages, reserves, budget). The hint is the median
//! of the matching nodes' largest stable contexts (the lower one of an even count), so
//! one broken node does not steer the others.

use std::path::{Path, PathBuf};

use crate::config::Config;
use crate::guard::Thresholds;
use crate::tune::memory::Key;
use crate::tune::WarmStartSource;

use super::layout;
use super::report::{read_summaries, read_limit};

/// A fleet's results directory, read as a warm-start source.
#[derive(Debug, Clone)]
pub struct SharedResults {
    dir: PathBuf,
}

impl SharedResults {
    pub fn new(dir: &Path) -> Self {
        Self {
            dir: dir.to_path_buf(),
        }
    }

    /// The largest stable context of each node's latest matching result, as (node, ctx).
    pub fn matching_limits(&self, key: &Key, config: &Config) -> Vec<(String, u32)> {
        let wanted = config.thresholds();
        let Ok(nodes) = layout::node_dirs(&self.dir) else {
            return Vec::new();
        };
        let mut found = Vec::new();
        for node in nodes {
            let mut unreadable = Vec::new();
            let latest = read_summaries(&node.path, &mut unreadable)
                .into_iter()
                .map(|(_, s)| s)
                .filter(|s| {
                    s.status == "completed"
                        && s.model.digest.as_deref() == Some(key.model_digest.as_str())
                        && s.ozone_version == key.ozone_version
                        && s.hardware.fingerprint() == key.hardware_fingerprint
                        && serde_json::from_value::<Config>(s.config.clone())
                            .is_ok_and(|c| same_memory_limits(&c.thresholds(), &wanted))
                })
                .max_by_key(|s| s.started_at);
            if let Some(ctx) = latest
                .and_then(|s| read_limit(&s.limits, "max_context").value)
                .and_then(|v| u32::try_from(v).ok())
            {
                found.push((node.node, ctx));
            }
        }
        found
    }
}

impl WarmStartSource for SharedResults {
    fn context_hint(&self, key: &Key, config: &Config) -> Option<(u32, String)> {
        let found = self.matching_limits(key, config);
        let mut limits: Vec<u32> = found.iter().map(|(_, ctx)| *ctx).collect();
        limits.sort_unstable();
        let median = *limits.get(limits.len().checked_sub(1)? / 2)?;
        Some((
            median,
            format!(
                "warm start: {} node(s) with this hardware found context {median} for this model \
                 (median of {}, from {}; --fresh ignores it)",
                found.len(),
                limits
                    .iter()
                    .map(u32::to_string)
                    .collect::<Vec<_>>()
                    .join(", "),
                self.dir.display()
            ),
        ))
    }
}

/// The limits that decide how much memory a context may use.
fn same_memory_limits(a: &Thresholds, b: &Thresholds) -> bool {
    a.max_vram_percent == b.max_vram_percent
        && a.max_ram_percent == b.max_ram_percent
        && a.vram_reserve_mb == b.vram_reserve_mb
        && a.ram_reserve_mb == b.ram_reserve_mb
        && a.process_memory_budget_mb == b.process_memory_budget_mb
}
