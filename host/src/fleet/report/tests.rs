//! The fleet report over summaries in the real format (`report::RunSummary`, written as
//! `ozone tune` writes them), edited where a test needs another node's figures.

use std::path::Path;

use chrono::Duration;
use serde_json::{json, Value};

use super::*;
use crate::fixtures;
use crate::report::{RunStatus, RunSummary};

/// The fixture run's summary as JSON: max context 20480, best batch 256, concurrency 2.
fn summary() -> Value {
    let s = RunSummary::new(
        &crate::report::tests::run_started(),
        fixtures::trials(),
        RunStatus::Completed,
        Some(crate::report::tests::run_started().started_at + Duration::minutes(9)),
        fixtures::limits(),
        None,
    );
    serde_json::to_value(&s).unwrap()
}

fn write(results: &Path, node: &str, name: &str, summary: &Value) {
    let dir = results.join(node).join("summaries");
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join(name), serde_json::to_string(summary).unwrap()).unwrap();
}

fn with_context(ctx: u64) -> Value {
    let mut s = summary();
    s["limits"]["max_context"] = json!(ctx);
    s
}

#[test]
fn identical_nodes_within_noise_are_one_quiet_group() {
    let dir = tempfile::tempdir().unwrap();
    write(dir.path(), "gpu01", "m_1.json", &with_context(20480));
    // 5 % of 20480 is 1024: 19712 is 768 below, within noise.
    write(dir.path(), "gpu02", "m_1.json", &with_context(19712));
    std::fs::create_dir_all(dir.path().join("gpu03")).unwrap();
    let report = build(dir.path()).unwrap();
    assert_eq!(report.runs.len(), 2);
    assert_eq!(report.groups.len(), 1);
    let group = &report.groups[0];
    assert_eq!(group.nodes, ["gpu01", "gpu02"]);
    assert!(!group.flagged(), "{:?}", group.models);
    assert_eq!(group.fingerprint, fixtures::hardware().fingerprint());
    assert_eq!(
        group.machine,
        "AMD EPYC 7763 64-Core Processor, 2 cores, 8 GiB RAM, no GPU"
    );
    assert_eq!(report.nodes_without_results, ["gpu03"]);
    let run = &report.runs[0];
    assert_eq!(run.limit("best_batch"), Some(256));
    assert_eq!(run.limits["max_context"].bound_by, None);
    assert_eq!(run.wall_ms, Some(9 * 60 * 1000));
    assert_eq!(run.presets.len(), 3);
    assert_eq!(run.presets[0].name, "max_context");

    let text = table(&report);
    assert!(text.contains("20480 (—)"), "{text}");
    assert!(text.contains("no results yet: gpu03"), "{text}");
    assert!(!text.contains("FLAGGED"), "{text}");
}

#[test]
fn a_node_beyond_noise_flags_its_group_and_names_itself() {
    let dir = tempfile::tempdir().unwrap();
    write(dir.path(), "gpu01", "m_1.json", &with_context(20480));
    write(dir.path(), "gpu02", "m_1.json", &with_context(20480));
    write(dir.path(), "gpu03", "m_1.json", &with_context(16384));
    let report = build(dir.path()).unwrap();
    assert_eq!(report.flagged_groups(), 1);
    let d = &report.groups[0].models[0].disagreements;
    assert_eq!(d.len(), 1);
    assert_eq!(d[0].limit, "max_context");
    assert_eq!(
        d[0].message,
        "max context: 16384 on gpu03 but 20480 on gpu01, gpu02: 4096 apart, more than the 1024 noise allows"
    );
    let text = table(&report);
    assert!(text.contains("** FLAGGED **"), "{text}");
    let html = render_html(&report);
    assert!(html.contains("class=\"flagged\""));
    assert!(html.contains("16384 on gpu03"));
}

#[test]
fn other_hardware_is_another_group_and_an_older_run_is_superseded() {
    let dir = tempfile::tempdir().unwrap();
    write(dir.path(), "gpu01", "m_1.json", &with_context(20480));
    // The same node, an older run with another answer: only the latest counts.
    let mut old = with_context(8192);
    old["started_at"] = json!("2026-01-01T00:00:00Z");
    write(dir.path(), "gpu01", "m_0.json", &old);
    let mut big = with_context(65536);
    big["hardware"]["gpus"] = json!([{
        "index": 0, "vendor": "nvidia",
        "name": {"value": "NVIDIA H100 80GB HBM3", "source": "nvml"},
        "driver": null,
        "vram_total_bytes": {"value": 85_899_345_920u64, "source": "nvml"},
        "vram_used_bytes": null, "gtt_total_bytes": null, "gtt_used_bytes": null,
        "unified_memory": false, "temperature_c": null, "utilization_percent": null
    }]);
    write(dir.path(), "h100-1", "m_1.json", &big);
    let report = build(dir.path()).unwrap();
    assert_eq!(report.runs.len(), 2);
    assert_eq!(report.groups.len(), 2);
    assert_eq!(report.flagged_groups(), 0);
    let h100 = report
        .groups
        .iter()
        .find(|g| g.nodes == ["h100-1"])
        .unwrap();
    assert!(
        h100.machine.ends_with("NVIDIA H100 80GB HBM3 80 GiB"),
        "{}",
        h100.machine
    );
    let gpu01 = report.runs.iter().find(|r| r.node == "gpu01").unwrap();
    assert_eq!(gpu01.limit("max_context"), Some(20480));
}

#[test]
fn bound_by_is_read_in_either_shape_and_nothing_stable_disagrees() {
    let dir = tempfile::tempdir().unwrap();
    let mut object = summary();
    object["limits"]["max_context"] = json!({"value": 20480, "bound_by": "memory", "evidence": {}});
    object["limits"]["best_batch"] = json!({"value": 256, "bound_by": {"kind": "instability"}});
    write(dir.path(), "gpu01", "m_1.json", &object);
    let mut none = summary();
    none["limits"] = json!({"max_context": null, "best_batch": null, "max_concurrency": null});
    none["presets"] = json!({"outcome": "no_stable_configuration"});
    write(dir.path(), "gpu02", "m_1.json", &none);
    write(
        dir.path(),
        "gpu03",
        "m_1.json",
        &json!({"not": "a summary"}),
    );

    let report = build(dir.path()).unwrap();
    let gpu01 = &report.runs[0];
    assert_eq!(
        gpu01.limits["max_context"].bound_by.as_deref(),
        Some("memory")
    );
    assert_eq!(
        gpu01.limits["best_batch"].bound_by.as_deref(),
        Some("instability")
    );
    assert_eq!(gpu01.limits["max_concurrency"].bound_by, None);
    let messages: Vec<&str> = report.groups[0].models[0]
        .disagreements
        .iter()
        .map(|d| d.message.as_str())
        .collect();
    assert!(
        messages.contains(&"max context: gpu02 found nothing stable where gpu01 found 20480"),
        "{messages:?}"
    );
    assert_eq!(report.unreadable.len(), 1);
    assert!(
        report.unreadable[0].contains("gpu03"),
        "{:?}",
        report.unreadable
    );
    assert_eq!(report.nodes_without_results, ["gpu03"]);
    let text = table(&report);
    assert!(
        text.contains("20480 (memory)") && text.contains("256 (instability)"),
        "{text}"
    );
    assert!(text.contains("none stable"), "{text}");
}

#[test]
fn the_noise_rule_in_numbers() {
    assert_eq!(tolerance("max_context", 4096), 256);
    assert_eq!(tolerance("max_context", 20480), 1024);
    // One doubling apart agrees, two do not.
    assert_eq!(tolerance("best_batch", 256), 128);
    assert_eq!(tolerance("max_concurrency", 8), 4);
}

#[test]
fn the_page_is_self_contained_and_escaped() {
    let dir = tempfile::tempdir().unwrap();
    let mut s = with_context(20480);
    s["model"]["name"] = json!("<script>alert(1)</script>");
    write(dir.path(), "gpu01", "m_1.json", &s);
    let html = render_html(&build(dir.path()).unwrap());
    assert!(html.starts_with("<!DOCTYPE html>"));
    assert!(
        !html.contains("<script"),
        "no script, and user text escaped"
    );
    assert!(html.contains("&lt;script&gt;"));
    assert!(!html.contains("src=\"http") && !html.contains("href=\"http"));
    assert!(html.contains("<svg"), "the context chart");
}
