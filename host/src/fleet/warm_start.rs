//! Shared warm start: `ozone tune --warm-start-from DIR` starts from what the other nodes
//! of a fleet found, so the tenth identical node confirms the limit in two trials
//! instead of searching for it.
//!
//! A result counts when it was completed with the same hardware fingerprint, model
//! digest and Ozone version (the key of this machine's own store, `tune::warm_start`) and
//! under the same memory limits (percentages, reserves, budget). The hint is the median
//! of the matching nodes' largest stable contexts (the lower one of an even count), so
//! one broken node does not steer the others.

use std::path::{Path, PathBuf};

use crate::config::Config;
use crate::guard::Thresholds;
use crate::tune::warm_start::{Key, WarmStartSource};

use super::layout;
use super::report::{read_limit, read_summaries};

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

#[cfg(test)]
mod tests {
    use serde_json::{json, Value};

    use super::*;
    use crate::fixtures;
    use crate::report::{RunStatus, RunSummary};

    fn summary(ctx: u64) -> Value {
        let s = RunSummary::new(
            &crate::report::tests::run_started(),
            fixtures::trials(),
            RunStatus::Completed,
            None,
            crate::fixtures::limits(),
            None,
        );
        let mut v = serde_json::to_value(&s).unwrap();
        v["limits"]["max_context"] = json!(ctx);
        v
    }

    fn write(results: &Path, node: &str, summary: &Value) {
        let dir = results.join(node).join("summaries");
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join("m.json"), summary.to_string()).unwrap();
    }

    #[test]
    fn the_hint_is_the_median_of_matching_nodes_only() {
        let dir = tempfile::tempdir().unwrap();
        let started = crate::report::tests::run_started();
        let key = Key::new(&started.hardware, started.model.digest.as_deref().unwrap());
        let config = started.config.clone();
        let source = SharedResults::new(dir.path());
        assert_eq!(source.context_hint(&key, &config), None);

        write(dir.path(), "gpu01", &summary(20480));
        write(dir.path(), "gpu02", &summary(20736));
        // A broken node does not steer the median.
        write(dir.path(), "gpu03", &summary(4096));
        // Not comparable: another model, other hardware, another budget, not completed.
        let mut other = summary(1024);
        other["model"]["digest"] = json!("sha256:00");
        write(dir.path(), "gpu04", &other);
        let mut other = summary(1024);
        other["hardware"]["memory"]["total_bytes"]["value"] = json!(16u64 << 30);
        write(dir.path(), "gpu05", &other);
        let mut other = summary(1024);
        other["config"]["ozone"]["process_memory_budget_mb"] = json!(512);
        write(dir.path(), "gpu06", &other);
        let mut other = summary(1024);
        other["status"] = json!("interrupted");
        write(dir.path(), "gpu07", &other);

        let mut found = source.matching_limits(&key, &config);
        found.sort();
        assert_eq!(
            found,
            [
                ("gpu01".into(), 20480),
                ("gpu02".into(), 20736),
                ("gpu03".into(), 4096)
            ]
        );
        let (hint, note) = source.context_hint(&key, &config).unwrap();
        assert_eq!(hint, 20480);
        assert!(
            note.contains("3 node(s)") && note.contains("4096, 20480, 20736"),
            "{note}"
        );
    }
}
