//! `ozone config show` as a user runs it: exit codes and one-line errors with positions.

use crate::common::cli::{ozone, BAD_INPUT};

#[test]
fn malformed_yaml_is_a_one_line_error_with_position_and_code_2() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("bad.yaml"),
        "testing:\n  concurrency_progression:\n    levels: [1, 2\n  other: 1\n",
    )
    .unwrap();
    let out = ozone(dir.path(), &["config", "show", "--config", "bad.yaml"]).run();
    out.code(BAD_INPUT).error("error: bad.yaml:4:");
    assert!(out.stdout.is_empty());
    assert_eq!(out.stderr.lines().count(), 1, "{}", out.stderr);
}

#[test]
fn out_of_range_value_names_file_line_column_and_key() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("ozone.yaml"),
        "hardware_monitoring:\n  safety_thresholds:\n    max_vram_percent: 150\n",
    )
    .unwrap();
    // Found in the working directory without --config.
    let out = ozone(dir.path(), &["config", "show"]).run();
    out.code(BAD_INPUT);
    assert_eq!(
        out.stderr.trim_end(),
        "error: ozone.yaml:3:23: hardware_monitoring.safety_thresholds.max_vram_percent: \
         must be a percentage in (0, 100], got 150"
    );
}

#[test]
fn show_json_reports_source_values_and_provenance() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("my.yaml"),
        "search_strategy:\n  initial_context_probe: 32768\n  warp: 9\n",
    )
    .unwrap();
    let out = ozone(
        dir.path(),
        &["config", "show", "--config", "my.yaml", "--json"],
    )
    .run();
    out.ok();
    out.says("my.yaml:3:9: unknown key `search_strategy.warp` ignored");
    let v = out.json();
    assert_eq!(v["source"], "my.yaml");
    let entries = v["entries"].as_array().unwrap();
    let probe = entries
        .iter()
        .find(|e| e["path"] == "search_strategy.initial_context_probe")
        .unwrap();
    assert_eq!(probe["value"], 32768);
    assert_eq!(probe["provenance"]["from"], "file");
    let factor = entries
        .iter()
        .find(|e| e["path"] == "search_strategy.binary_search_factor")
        .unwrap();
    assert_eq!(factor["provenance"]["from"], "default");
}

#[test]
fn the_gpu_memory_budget_is_shown_with_its_provenance() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("ozone.yaml"),
        "ozone:\n  gpu_memory_budget_mb: 40960\n",
    )
    .unwrap();
    let v = ozone(dir.path(), &["config", "show", "--json"])
        .run()
        .json();
    let budget = v["entries"]
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["path"] == "ozone.gpu_memory_budget_mb")
        .expect("the key is listed");
    assert_eq!(budget["value"], 40960);
    assert_eq!(budget["provenance"]["from"], "file");
    let out = ozone(dir.path(), &["config", "show"]).run();
    let stdout = out.ok();
    assert!(
        stdout
            .lines()
            .any(|l| l.contains("ozone.gpu_memory_budget_mb") && l.contains("40960")),
        "{stdout}"
    );
    // Zero is refused with the file, position and key.
    std::fs::write(
        dir.path().join("ozone.yaml"),
        "ozone:\n  gpu_memory_budget_mb: 0\n",
    )
    .unwrap();
    ozone(dir.path(), &["config", "show"])
        .run()
        .code(BAD_INPUT)
        .error("error: ozone.yaml:2:25: ozone.gpu_memory_budget_mb: must be at least 1");
}
