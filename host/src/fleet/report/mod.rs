//! `ozone fleet report`: every node's results side by side, nodes with the same hardware
//! fingerprint grouped, and a group whose limits disagree beyond noise flagged: on
//! identical hardware that is a broken node or a different driver.
//!
//! **Noise**, concretely. Two results for the same model on the same hardware agree
//! when:
//! - max context: they are at most `max(256 tokens, 5 % of the larger)` apart. 256 is the
//!   search's granularity (a bisection ends within one step), 5 % covers run-to-run
//!   memory noise at large contexts;
//! - best batch and max concurrency: they are at most one doubling apart (the larger at
//!   most twice the smaller): both are searched in doublings, and a flat throughput peak
//!   can land on either neighbour;
//! - a node that found no stable configuration where others did always disagrees.
//!
//! Summaries are read tolerantly (only the fields shown here, as JSON values), so a
//! summary written by another Ozone version still shows: `limits.<name>` may be a
//! number or an object with `value` and `bound_by` (a string, or an object with `kind`).

mod html;
mod text;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::Value;

pub use html::render_html;
pub use text::table;

use super::layout;
use super::FleetError;
use crate::hardware::HardwareSnapshot;

/// The search granularity (tokens) below which two contexts cannot be told apart.
pub const CONTEXT_STEP: u64 = crate::tune::CONTEXT_GRANULARITY as u64;
/// Relative context difference (of the larger) still counted as noise.
pub const CONTEXT_TOLERANCE: f64 = 0.05;
/// Batch and concurrency: the larger may be this many times the smaller.
pub const DOUBLING_TOLERANCE: u64 = 2;

/// The limits shown, in order.
pub const LIMITS: [&str; 3] = ["max_context", "best_batch", "max_concurrency"];

/// One limit of one run.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct LimitCell {
    pub value: Option<u64>,
    /// What stopped it (`memory`, `time`, …) when the summary says.
    pub bound_by: Option<String>,
}

/// One preset of one run.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct PresetCell {
    pub name: String,
    pub ctx: Option<u64>,
    pub batch: Option<u64>,
}

/// One model's latest run on one node.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct NodeRun {
    pub node: String,
    pub model: String,
    pub model_digest: Option<String>,
    pub fingerprint: String,
    /// The hardware in words: CPU, cores, RAM, GPUs.
    pub machine: String,
    pub status: String,
    pub limits: BTreeMap<String, LimitCell>,
    pub presets: Vec<PresetCell>,
    pub wall_ms: Option<u64>,
    pub started_at: DateTime<Utc>,
    pub ozone_version: String,
    pub summary: PathBuf,
}

impl NodeRun {
    pub fn limit(&self, name: &str) -> Option<u64> {
        self.limits.get(name).and_then(|l| l.value)
    }

    /// Same model: by digest when both have one, else by name.
    fn model_key(&self) -> String {
        self.model_digest
            .clone()
            .unwrap_or_else(|| format!("name:{}", self.model))
    }
}

/// A limit on which a group's nodes disagree beyond noise.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Disagreement {
    pub limit: String,
    /// `node → value` (`None`: nothing stable).
    pub values: BTreeMap<String, Option<u64>>,
    pub message: String,
}

/// The runs of one model on one hardware fingerprint.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ModelGroup {
    pub model: String,
    pub model_digest: Option<String>,
    pub nodes: Vec<String>,
    pub disagreements: Vec<Disagreement>,
}

/// Nodes with the same hardware fingerprint.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct HardwareGroup {
    pub fingerprint: String,
    pub machine: String,
    pub nodes: Vec<String>,
    pub models: Vec<ModelGroup>,
}

impl HardwareGroup {
    pub fn flagged(&self) -> bool {
        self.models.iter().any(|m| !m.disagreements.is_empty())
    }
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct FleetReport {
    pub results: PathBuf,
    pub generated_at: DateTime<Utc>,
    pub noise_rule: String,
    pub runs: Vec<NodeRun>,
    pub groups: Vec<HardwareGroup>,
    /// Node folders with no summary at all (see `ozone fleet status`).
    pub nodes_without_results: Vec<String>,
    /// Summaries that could not be read, with why.
    pub unreadable: Vec<String>,
}

impl FleetReport {
    pub fn flagged_groups(&self) -> usize {
        self.groups.iter().filter(|g| g.flagged()).count()
    }
}

/// The noise rule in one sentence (shown in the report).
pub fn noise_rule() -> String {
    format!(
        "limits agree within noise when max contexts are at most max({CONTEXT_STEP} tokens, \
         {:.0} % of the larger) apart and best batch / max concurrency at most one doubling \
         apart; a node with nothing stable where others found a limit always disagrees",
        CONTEXT_TOLERANCE * 100.0
    )
}

/// Reads every node's summaries under `DIR` and compares them.
pub fn build(results: &Path) -> Result<FleetReport, FleetError> {
    if !results.is_dir() {
        return Err(FleetError::BadInput(format!(
            "--results {}: no such directory",
            results.display()
        )));
    }
    let mut runs = Vec::new();
    let mut unreadable = Vec::new();
    let mut nodes_without_results = Vec::new();
    for node in layout::node_dirs(results)? {
        let found = node_summaries(&node.node, &node.path, &mut unreadable);
        if found.is_empty() {
            nodes_without_results.push(node.node);
        }
        runs.extend(found);
    }
    runs.sort_by(|a, b| {
        (&a.fingerprint, &a.model, &a.node).cmp(&(&b.fingerprint, &b.model, &b.node))
    });
    let groups = group(&runs);
    Ok(FleetReport {
        results: results.to_path_buf(),
        generated_at: Utc::now(),
        noise_rule: noise_rule(),
        runs,
        groups,
        nodes_without_results,
        unreadable,
    })
}

/// The fields of `summaries/<model>_<ts>.json` the report reads.
#[derive(Debug, Deserialize)]
pub(crate) struct SummaryFile {
    pub ozone_version: String,
    pub model: SummaryModel,
    pub hardware: HardwareSnapshot,
    pub status: String,
    pub started_at: DateTime<Utc>,
    #[serde(default)]
    pub timings: Value,
    #[serde(default)]
    pub limits: Value,
    #[serde(default)]
    pub presets: Value,
    #[serde(default)]
    pub config: Value,
}

#[derive(Debug, Deserialize)]
pub(crate) struct SummaryModel {
    pub name: String,
    pub digest: Option<String>,
}

/// Every summary in `<node dir>/summaries/`, with its path; unreadable ones are noted.
pub(crate) fn read_summaries(
    node_dir: &Path,
    unreadable: &mut Vec<String>,
) -> Vec<(PathBuf, SummaryFile)> {
    let Ok(entries) = std::fs::read_dir(node_dir.join("summaries")) else {
        return Vec::new();
    };
    let mut paths: Vec<PathBuf> = entries
        .filter_map(Result::ok)
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|x| x == "json"))
        .collect();
    paths.sort();
    paths
        .into_iter()
        .filter_map(|path| {
            let parsed = std::fs::read_to_string(&path)
                .map_err(|e| e.to_string())
                .and_then(|t| serde_json::from_str::<SummaryFile>(&t).map_err(|e| e.to_string()));
            match parsed {
                Ok(summary) => Some((path, summary)),
                Err(e) => {
                    unreadable.push(format!("{}: {e}", path.display()));
                    None
                }
            }
        })
        .collect()
}

/// The latest summary of each model on one node.
fn node_summaries(node: &str, dir: &Path, unreadable: &mut Vec<String>) -> Vec<NodeRun> {
    let mut latest: BTreeMap<String, NodeRun> = BTreeMap::new();
    for (path, s) in read_summaries(dir, unreadable) {
        let run = node_run(node, path, s);
        let key = run.model_key();
        if latest
            .get(&key)
            .is_none_or(|old| run.started_at > old.started_at)
        {
            latest.insert(key, run);
        }
    }
    latest.into_values().collect()
}

fn node_run(node: &str, path: PathBuf, s: SummaryFile) -> NodeRun {
    NodeRun {
        node: node.to_string(),
        model: s.model.name,
        model_digest: s.model.digest,
        fingerprint: s.hardware.fingerprint(),
        machine: machine(&s.hardware),
        status: s.status,
        limits: LIMITS
            .iter()
            .map(|name| (name.to_string(), read_limit(&s.limits, name)))
            .collect(),
        presets: presets(&s.presets),
        wall_ms: s.timings.get("wall_ms").and_then(Value::as_u64),
        started_at: s.started_at,
        ozone_version: s.ozone_version,
        summary: path,
    }
}

/// `limits.<name>`: a number, or `{ "value": …, "bound_by": … }`; `bound_by` may also be a
/// map beside the limits (`limits.bound_by.<name>`).
pub(crate) fn read_limit(limits: &Value, name: &str) -> LimitCell {
    let v = &limits[name];
    let value = v
        .as_u64()
        .or_else(|| v.get("value").and_then(Value::as_u64));
    let bound = v
        .get("bound_by")
        .or_else(|| limits.get("bound_by").and_then(|b| b.get(name)));
    let bound_by = bound.and_then(|b| {
        b.as_str()
            .or_else(|| b.get("kind").and_then(Value::as_str))
            .map(str::to_string)
    });
    LimitCell { value, bound_by }
}

fn presets(presets: &Value) -> Vec<PresetCell> {
    let cell = |name: &str, p: &Value| PresetCell {
        name: name.to_string(),
        ctx: p.get("ctx").and_then(Value::as_u64),
        batch: p.pointer("/config/batch").and_then(Value::as_u64),
    };
    match presets.get("outcome").and_then(Value::as_str) {
        Some("three") => ["max_context", "balanced", "fast_response"]
            .iter()
            .filter_map(|name| presets.get(*name).map(|p| cell(name, p)))
            .collect(),
        Some("only_one") => presets
            .get("preset")
            .map(|p| vec![cell("only stable", p)])
            .unwrap_or_default(),
        _ => Vec::new(),
    }
}

/// The hardware in words, for people: the fingerprint is for matching.
pub fn machine(hw: &HardwareSnapshot) -> String {
    const GIB: f64 = (1u64 << 30) as f64;
    let cpu = hw
        .cpu
        .model
        .as_ref()
        .map(|m| m.value.trim().to_string())
        .unwrap_or_else(|| "unknown CPU".into());
    let cores = hw
        .cpu
        .logical_cores
        .map(|m| format!(", {} cores", m.value))
        .unwrap_or_default();
    let ram = hw
        .memory
        .total_bytes
        .map(|m| format!(", {:.0} GiB RAM", m.value as f64 / GIB))
        .unwrap_or_default();
    let gpus = if hw.gpus.is_empty() {
        ", no GPU".to_string()
    } else {
        let names: Vec<String> = hw
            .gpus
            .iter()
            .map(|g| {
                let name = g.name.as_ref().map_or("GPU", |m| m.value.as_str());
                match g.usable_total_bytes() {
                    Some(b) => format!("{name} {:.0} GiB", b as f64 / GIB),
                    None => name.to_string(),
                }
            })
            .collect();
        format!(", {}", names.join(" + "))
    };
    format!("{cpu}{cores}{ram}{gpus}")
}

/// Groups runs by fingerprint, then by model, and looks for disagreements.
fn group(runs: &[NodeRun]) -> Vec<HardwareGroup> {
    let mut by_fingerprint: BTreeMap<&str, Vec<&NodeRun>> = BTreeMap::new();
    for run in runs {
        by_fingerprint
            .entry(&run.fingerprint)
            .or_default()
            .push(run);
    }
    by_fingerprint
        .into_iter()
        .map(|(fingerprint, runs)| {
            let mut nodes: Vec<String> = runs.iter().map(|r| r.node.clone()).collect();
            nodes.sort();
            nodes.dedup();
            let mut by_model: BTreeMap<String, Vec<&NodeRun>> = BTreeMap::new();
            for run in &runs {
                by_model.entry(run.model_key()).or_default().push(run);
            }
            HardwareGroup {
                fingerprint: fingerprint.to_string(),
                machine: runs[0].machine.clone(),
                nodes,
                models: by_model
                    .into_values()
                    .map(|runs| ModelGroup {
                        model: runs[0].model.clone(),
                        model_digest: runs[0].model_digest.clone(),
                        nodes: runs.iter().map(|r| r.node.clone()).collect(),
                        disagreements: LIMITS
                            .iter()
                            .filter_map(|limit| disagreement(limit, &runs))
                            .collect(),
                    })
                    .collect(),
            }
        })
        .collect()
}

/// How far apart two values of `limit` may be and still agree (see the module docs).
pub fn tolerance(limit: &str, larger: u64) -> u64 {
    if limit == "max_context" {
        CONTEXT_STEP.max((larger as f64 * CONTEXT_TOLERANCE).round() as u64)
    } else {
        larger - larger / DOUBLING_TOLERANCE
    }
}

fn disagreement(limit: &str, runs: &[&NodeRun]) -> Option<Disagreement> {
    let values: BTreeMap<String, Option<u64>> = runs
        .iter()
        .map(|r| (r.node.clone(), r.limit(limit)))
        .collect();
    let found: Vec<u64> = values.values().flatten().copied().collect();
    let (&low, &high) = (found.iter().min()?, found.iter().max()?);
    let missing: Vec<&str> = values
        .iter()
        .filter(|(_, v)| v.is_none())
        .map(|(n, _)| n.as_str())
        .collect();
    let name = limit.replace('_', " ");
    let allowed = tolerance(limit, high);
    let message = if !missing.is_empty() {
        format!(
            "{name}: {} found nothing stable where {} found {}",
            missing.join(", "),
            nodes_with(&values, |v| v.is_some()).join(", "),
            if low == high {
                low.to_string()
            } else {
                format!("{low}..{high}")
            }
        )
    } else if high - low > allowed {
        format!(
            "{name}: {low} on {} but {high} on {}: {} apart, more than the {allowed} noise allows",
            nodes_with(&values, |v| *v == Some(low)).join(", "),
            nodes_with(&values, |v| *v == Some(high)).join(", "),
            high - low
        )
    } else {
        return None;
    };
    Some(Disagreement {
        limit: limit.to_string(),
        values,
        message,
    })
}

fn nodes_with(
    values: &BTreeMap<String, Option<u64>>,
    keep: impl Fn(&Option<u64>) -> bool,
) -> Vec<String> {
    values
        .iter()
        .filter(|(_, v)| keep(v))
        .map(|(n, _)| n.clone())
        .collect()
}

/// `6m02s`, `42.0s`.
pub(crate) fn duration(ms: u64) -> String {
    let s = ms / 1000;
    if s >= 60 {
        format!("{}m{:02}s", s / 60, s % 60)
    } else {
        format!("{:.1}s", ms as f64 / 1000.0)
    }
}

#[cfg(test)]
mod tests;
